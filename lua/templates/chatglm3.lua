-- chatglm3: ChatGLM3, role tokens <|user|> / <|assistant|> by token text; glm4 tools.
return {
  name = "chatglm3",
  format_user = { { token = "<|user|>" }, "\n", "{{content}}", { token = "<|assistant|>" } },
  format_assistant = { "\n", "{{content}}" },
  format_system = { { token = "<|system|>" }, "\n", "{{content}}" },
  format_function = { "{{content}}", tool_format = "glm4" },
  format_observation = { { token = "<|observation|>" }, "\n", "{{content}}", { token = "<|assistant|>" } },
  format_tools = { tool_format = "glm4" },
  format_prefix = { { token = "[gMASK]" }, { token = "sop" } },
  stop_words = { "<|user|>", "<|observation|>" },
  efficient_eos = true,
}
