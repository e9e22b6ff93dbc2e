-- index: Bilibili Index, reserved tokens as role markers.
return {
  name = "index",
  format_user = { "reserved_0{{content}}reserved_1" },
  format_system = { "<unk>{{content}}" },
  efficient_eos = true,
}
