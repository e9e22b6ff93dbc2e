-- phi4: Phi-4, <|im_start|>role<|im_sep|>.
return {
  name = "phi4",
  format_user = { "<|im_start|>user<|im_sep|>{{content}}<|im_end|><|im_start|>assistant<|im_sep|>" },
  format_assistant = { "{{content}}<|im_end|>" },
  format_system = { "<|im_start|>system<|im_sep|>{{content}}<|im_end|>" },
  stop_words = { "<|im_end|>" },
  replace_eos = true,
}
