-- olmo: AllenAI OLMo, <|user|> / <|assistant|> after the eos prefix.
return {
  name = "olmo",
  format_user = { "<|user|>\n{{content}}<|assistant|>\n" },
  format_prefix = { { "eos_token" } },
}
