"""The prompt and its artifact: `Prompt` (the parts a method optimizes: instruction, placement, procedure,
answer format, demonstrations, answer prefix) and the YAML artifact a run writes (`store`)."""
