"""The chat page: served with its assets, and driven in headless Chromium."""
