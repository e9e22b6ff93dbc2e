-- ernie_nothink: ERNIE 4.5 without thinking.
return {
  name = "ernie_nothink",
  format_user = { "User: {{content}}\nAssistant: " },
  format_assistant = { "{{content}}<|end_of_sentence|>" },
  format_system = { "{{content}}\n" },
  format_prefix = { "<|begin_of_sentence|>" },
  stop_words = { "<|end_of_sentence|>" },
}
