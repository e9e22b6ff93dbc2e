-- zephyr: Zephyr, <|user|> / <|assistant|> with </s>.
return {
  name = "zephyr",
  format_user = { "<|user|>\n{{content}}", { "eos_token" }, "<|assistant|>\n" },
  format_system = { "<|system|>\n{{content}}", { "eos_token" } },
  default_system = "You are Zephyr, a helpful assistant.",
}
