-- solar: Upstage SOLAR instruct, ### User: / ### Assistant:.
return {
  name = "solar",
  format_user = { "### User:\n{{content}}\n\n### Assistant:\n" },
  format_system = { "### System:\n{{content}}\n\n" },
  efficient_eos = true,
}
