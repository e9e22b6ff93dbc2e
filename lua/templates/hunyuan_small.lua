-- hunyuan_small: Tencent Hunyuan small models.
return {
  name = "hunyuan_small",
  format_user = { "<｜hy_User｜>{{content}}<｜hy_place▁holder▁no▁8｜>" },
  format_assistant = { "{{content}}<｜hy_place▁holder▁no▁2｜>" },
  format_system = { "{{content}}<｜hy_place▁holder▁no▁3｜>" },
  format_prefix = { "<｜hy_begin▁of▁sentence｜>" },
  stop_words = { "<｜hy_place▁holder▁no▁2｜>" },
}
