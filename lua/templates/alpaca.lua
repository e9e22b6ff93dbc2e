-- alpaca: the Stanford Alpaca prompt, "### Instruction:\n...\n\n### Response:\n".
return {
  name = "alpaca",
  format_user = { "### Instruction:\n{{content}}\n\n### Response:\n" },
  format_assistant = { "{{content}}", { "eos_token" }, "\n\n" },
  default_system = "Below is an instruction that describes a task. "
    .. "Write a response that appropriately completes the request.\n\n",
  replace_jinja_template = true,
}
