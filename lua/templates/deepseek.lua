-- deepseek: DeepSeek LLM chat (V1 / V2), User: ... Assistant:.
return {
  name = "deepseek",
  format_user = { "User: {{content}}\n\nAssistant:" },
  format_system = { "{{content}}\n\n" },
  format_prefix = { { "bos_token" } },
}
