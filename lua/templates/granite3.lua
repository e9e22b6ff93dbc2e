-- granite3: IBM Granite 3.x, <|start_of_role|>...<|end_of_role|>.
return {
  name = "granite3",
  format_user = {
    "<|start_of_role|>user<|end_of_role|>{{content}}<|end_of_text|>\n"
      .. "<|start_of_role|>assistant<|end_of_role|>",
  },
  format_assistant = { "{{content}}<|end_of_text|>\n" },
  format_system = { "<|start_of_role|>system<|end_of_role|>{{content}}<|end_of_text|>\n" },
}
