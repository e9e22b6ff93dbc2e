-- empty: LLaMA-Factory's "empty" template: the response text alone, no markup.
return {
  name = "empty",
  format_assistant = { "{{content}}" },
}
