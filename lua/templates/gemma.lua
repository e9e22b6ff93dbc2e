-- gemma: Gemma / Gemma 2, <start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n.
-- Gemma has no system role: kind "llama2" puts the system text at the top of the first user turn.
return {
  name = "gemma",
  kind = "llama2",
  format_user = { "<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n" },
  format_assistant = { "{{content}}<end_of_turn>\n" },
  format_system = { "{{content}}\n\n" },
  format_observation = { "<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n" },
  format_prefix = { { "bos_token" } },
  stop_words = { "<end_of_turn>" },
  replace_eos = true,
}
