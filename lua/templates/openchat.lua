-- openchat: OpenChat 3.5, GPT4 Correct User: ... GPT4 Correct Assistant:.
return {
  name = "openchat",
  format_user = { "GPT4 Correct User: {{content}}", { "eos_token" }, "GPT4 Correct Assistant:" },
  format_prefix = { { "bos_token" } },
}
