-- gemma2: Gemma 2: gemma's format, with efficient_eos and <eos> as a stop word.
return {
  name = "gemma2",
  kind = "llama2",
  format_user = { "<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n" },
  format_assistant = { "{{content}}<end_of_turn>\n" },
  format_system = { "{{content}}\n\n" },
  format_observation = { "<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n" },
  format_prefix = { { "bos_token" } },
  stop_words = { "<eos>", "<end_of_turn>" },
  efficient_eos = true,
}
