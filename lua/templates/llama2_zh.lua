-- llama2_zh: Chinese Llama 2 (llama2's format with a Chinese default system prompt).
return {
  name = "llama2_zh",
  kind = "llama2",
  format_user = { { "bos_token" }, "[INST] {{content}} [/INST]" },
  format_system = { "<<SYS>>\n{{content}}\n<</SYS>>\n\n" },
  default_system = "You are a helpful assistant. 你是一个乐于助人的助手。",
}
