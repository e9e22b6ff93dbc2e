-- glm4_moe: GLM-4.5 / GLM-4.6 (MoE), reasoning; glm4_moe tools.
return {
  name = "glm4_moe",
  kind = "reasoning",
  format_user = { "<|user|>\n{{content}}<|assistant|>" },
  format_assistant = { "\n{{content}}" },
  format_system = { "<|system|>\n{{content}}" },
  format_function = { "{{content}}", tool_format = "glm4_moe" },
  format_observation = { "<|observation|>\n{{content}}<|assistant|>" },
  format_tools = { tool_format = "glm4_moe" },
  format_prefix = { "[gMASK]<sop>" },
  stop_words = { "<|user|>", "<|observation|>" },
  efficient_eos = true,
}
