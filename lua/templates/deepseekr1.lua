-- deepseekr1: DeepSeek-R1 and its distills: deepseek3's markers, reasoning rules.
return {
  name = "deepseekr1",
  kind = "reasoning",
  format_user = { "<｜User｜>{{content}}<｜Assistant｜>" },
  format_prefix = { { "bos_token" } },
}
