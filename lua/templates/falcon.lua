-- falcon: Falcon instruct, User: ... Falcon:.
return {
  name = "falcon",
  format_user = { "User: {{content}}\nFalcon:" },
  format_assistant = { "{{content}}\n" },
  efficient_eos = true,
}
