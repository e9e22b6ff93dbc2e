-- intern2: InternLM 2 / 2.5 chat (ChatML with its default system prompt).
return {
  name = "intern2",
  format_user = { "<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n" },
  format_assistant = { "{{content}}<|im_end|>\n" },
  format_system = { "<|im_start|>system\n{{content}}<|im_end|>\n" },
  format_prefix = { { "bos_token" } },
  default_system = "You are an AI assistant whose name is InternLM (书生·浦语).\n- InternLM (书生·浦语) is a "
                     .. "conversational language model that is developed by Shanghai AI Laboratory "
                     .. "(上海人工智能实验室). It is designed to be helpful, honest, and harmless.\n- InternLM "
                     .. "(书生·浦语) can understand and communicate fluently in the language chosen by the "
                     .. "user such as English and 中文.",
  stop_words = { "<|im_end|>" },
}
