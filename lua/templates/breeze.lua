-- breeze: MediaTek Breeze, [INST] ... [/INST].
return {
  name = "breeze",
  format_user = { "[INST] {{content}} [/INST] " },
  format_prefix = { { "bos_token" } },
  efficient_eos = true,
}
