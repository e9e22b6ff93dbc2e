-- gemma3: Gemma 3 text (LLaMA-Factory pairs it with a vision plugin whose image token is
-- <image_soft_token>; for text-only data it is gemma's format exactly).
return {
  name = "gemma3",
  kind = "llama2",
  format_user = { "<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n" },
  format_assistant = { "{{content}}<end_of_turn>\n" },
  format_system = { "{{content}}\n\n" },
  format_observation = { "<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n" },
  format_prefix = { { "bos_token" } },
  stop_words = { "<end_of_turn>" },
  replace_eos = true,
  mm_plugin = "gemma3", -- images are not supported yet: text only
}
