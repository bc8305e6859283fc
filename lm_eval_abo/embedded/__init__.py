"""The embedded default models: small GGUF files from PyPI, run in-process by llama.cpp.

  models    the model files: where they come from, how they are assembled and checked (no lm-eval import)
  buffers   how a model is loaded: llama.cpp's extra buffer types off on AMX CPUs, a test run first (`probe`)
  llama     the one thread that calls llama.cpp, model loading, completions and chats
  backend   `EmbeddedLM`, the lm-eval model `abo-embedded` (registered when this module is imported)
  provider  the litellm custom provider, so `embedded/<name>` is an optimizer model string
  serve     `lm-eval-abo serve`: OpenAI-compatible servers for the stock `lm_eval` CLI (`server_child`)
"""
