-- gpt_oss: OpenAI gpt-oss (harmony format): analysis channel as the thought.
return {
  name = "gpt_oss",
  kind = "reasoning",
  format_user = { "<|start|>user<|message|>{{content}}<|end|><|start|>assistant" },
  format_system = { "<|start|>system<|message|>{{content}}<|end|>" },
  default_system = "You are ChatGPT, a large language model trained by OpenAI.",
  thought_words = { "<|channel|>analysis<|message|>", "<|end|><|start|>assistant<|channel|>final<|message|>" },
  efficient_eos = true,
}
