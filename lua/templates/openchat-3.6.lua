-- openchat-3.6: OpenChat 3.6 (Llama 3 based).
return {
  name = "openchat-3.6",
  format_user = {
    "<|start_header_id|>GPT4 Correct User<|end_header_id|>\n\n"
      .. "{{content}}<|eot_id|><|start_header_id|>GPT4 Correct Assistant<|end_header_id|>\n\n",
  },
  format_prefix = { { "bos_token" } },
  stop_words = { "<|eot_id|>" },
}
