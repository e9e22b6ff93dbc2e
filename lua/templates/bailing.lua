-- bailing: Ling / Bailing (inclusionAI), <role>HUMAN</role> ... <role>ASSISTANT</role>.
return {
  name = "bailing",
  format_user = { "<role>HUMAN</role>{{content}}<role>ASSISTANT</role>" },
  format_system = { "<role>SYSTEM</role>{{content}}" },
  format_observation = { "<role>OBSERVATION</role>{{content}}<role>ASSISTANT</role>" },
  stop_words = { "<|endoftext|>" },
  efficient_eos = true,
}
