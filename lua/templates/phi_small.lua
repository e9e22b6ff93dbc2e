-- phi_small: Phi-3-small, <|user|>\n ... <|end|>\n<|assistant|>\n.
-- LLaMA-Factory declares the prefix as the set {"<|endoftext|>"}, which its encoder turns into
-- nothing (only bos_token / eos_token sets become ids); so no prefix here, to match its ids.
return {
  name = "phi_small",
  format_user = { "<|user|>\n{{content}}<|end|>\n<|assistant|>\n" },
  format_assistant = { "{{content}}<|end|>\n" },
  format_system = { "<|system|>\n{{content}}<|end|>\n" },
  stop_words = { "<|end|>" },
  replace_eos = true,
}
