"""The engine: the model's own thread, batching prompts and decode steps into token ids. It knows tokens,
not HTTP or gevent; `api` is the contract both engines (`torch_engine`, `vllm_engine`) keep."""
