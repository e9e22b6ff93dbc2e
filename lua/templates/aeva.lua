-- aeva: LLaMA-Factory's aeva format (GLM-4.7-style reasoning, glm4_moe tools).
return {
  name = "aeva",
  kind = "glm47_reasoning",
  format_user = { "<|user|>\n{{content}}<|assistant|>" },
  format_assistant = { "\n{{content}}" },
  format_system = { "<|system|>\n{{content}}" },
  format_function = { "{{content}}", tool_format = "glm4_moe" },
  format_observation = { "<|observation|>\n{{content}}<|assistant|>" },
  format_tools = { tool_format = "glm4_moe" },
  format_prefix = { "[gMASK]<sop>" },
  default_system = "You are an AI assistant named Aeva created by Zongzhi Lou. Your answer should be "
                     .. "friendly, unbiased, faithful, informative and detailed.",
  stop_words = { "<|user|>", "<|observation|>" },
  thought_words = { "<think>", "</think>" },
  efficient_eos = true,
}
