-- deepseekcoder: DeepSeek Coder instruct, ### Instruction: / ### Response:.
return {
  name = "deepseekcoder",
  format_user = { "### Instruction:\n{{content}}\n### Response:" },
  format_assistant = { "\n{{content}}\n<|EOT|>\n" },
  format_prefix = { { "bos_token" } },
  default_system = "You are an AI programming assistant, utilizing the DeepSeek Coder model, "
                     .. "developed by DeepSeek Company, and you only answer questions related to computer "
                     .. "science. For politically sensitive questions, security and privacy issues, and "
                     .. "other non-computer science questions, you will refuse to answer.\n",
}
