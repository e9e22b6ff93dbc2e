-- llama2: Llama 2 chat, <s>[INST] <<SYS>>\n...\n<</SYS>>\n\nquery [/INST] answer</s>.
-- kind "llama2": the system text goes inside the first user message, not before it.
-- The assistant slot is the default one: "{{content}}" then eos.
return {
  name = "llama2",
  kind = "llama2",
  format_user = { { "bos_token" }, "[INST] {{content}} [/INST]" },
  format_system = { "<<SYS>>\n{{content}}\n<</SYS>>\n\n" },
}
