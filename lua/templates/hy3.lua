-- hy3: Tencent Hunyuan 3 (reasoning).
return {
  name = "hy3",
  kind = "reasoning",
  format_user = { "<｜hy_User｜>{{content}}<｜hy_Assistant｜>" },
  format_assistant = { "{{content}}<｜hy_eos｜>" },
  format_prefix = { { "bos_token" } },
  stop_words = { "<｜hy_eos｜>" },
  thought_words = { "<think>", "</think>" },
  replace_eos = true,
}
