-- empty: LLaMA-Factory's "empty" template: the text alone, no markup (pretraining, or models
-- without a chat format). Only the response has a slot of its own; everything else uses the
-- defaults ("{{content}}"), so a system prompt is simply prepended to the first message.
return {
  name = "empty",
  format_assistant = { "{{content}}" },
}
