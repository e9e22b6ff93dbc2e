-- yuan: IEEA Yuan 2.0, <sep> / <eod>.
return {
  name = "yuan",
  format_user = { "{{content}}", { token = "<sep>" } },
  format_assistant = { "{{content}}<eod>\n" },
  stop_words = { "<eod>" },
}
