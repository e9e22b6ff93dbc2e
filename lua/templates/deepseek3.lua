-- deepseek3: DeepSeek-V3, <｜begin▁of▁sentence｜>system<｜User｜>query<｜Assistant｜>answer<eos>.
-- The markers use full-width bars (U+FF5C); the assistant slot is the default "{{content}}" + eos.
return {
  name = "deepseek3",
  format_user = { "<｜User｜>{{content}}<｜Assistant｜>" },
  format_prefix = { { "bos_token" } },
}
