"""chatglm-service: a ChatGLM-family chat model behind a streaming HTTP API."""
