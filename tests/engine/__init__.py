"""The engine, decoder, caches, kernels and model loading, in-process on real models: no server starts here."""
