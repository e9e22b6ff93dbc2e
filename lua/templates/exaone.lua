-- exaone: LG EXAONE 3.x, [|system|] / [|user|] / [|assistant|].
return {
  name = "exaone",
  format_user = { "[|user|]{{content}}\n[|assistant|]" },
  format_assistant = { "{{content}}", { "eos_token" }, "\n" },
  format_system = { "[|system|]{{content}}[|endofturn|]\n" },
}
