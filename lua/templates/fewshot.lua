-- fewshot: few-shot prompts: the messages joined by blank lines.
return {
  name = "fewshot",
  format_assistant = { "{{content}}\n\n" },
  efficient_eos = true,
  replace_jinja_template = true,
}
