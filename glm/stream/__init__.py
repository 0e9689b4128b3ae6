"""A request's life between the routes and the engine: admission and deadlines, the hand-off from the
engine thread to the hub, and its tokens turned into text (detokenizer, stop strings, choices)."""
