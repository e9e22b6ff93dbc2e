-- seed_oss: ByteDance Seed-OSS (reasoning); seed_oss tools.
return {
  name = "seed_oss",
  kind = "reasoning",
  format_user = { { "bos_token" }, "user\n{{content}}", { "eos_token" }, { "bos_token" }, "assistant\n" },
  format_system = { { "bos_token" }, "system\n{{content}}", { "eos_token" } },
  format_function = { { "bos_token" }, "\n{{content}}", { "eos_token" }, tool_format = "seed_oss" },
  format_tools = { tool_format = "seed_oss" },
  thought_words = { "<seed:think>", "</seed:think>" },
}
