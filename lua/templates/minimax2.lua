-- minimax2: MiniMax-M2 (reasoning); minimax2 tools.
return {
  name = "minimax2",
  kind = "reasoning",
  format_user = { "]~b]user\n{{content}}[e~[\n]~b]ai\n" },
  format_assistant = { "{{content}}[e~[\n" },
  format_system = { "]~!b[]~b]system\n{{content}}[e~[\n" },
  format_function = { "{{content}}[e~[\n", tool_format = "minimax2" },
  format_observation = { "]~b]tool\n<response>{{content}}</response>[e~[\n]~b]ai\n" },
  format_tools = { tool_format = "minimax2" },
  default_system = "You are a helpful assistant. Your name is MiniMax-M2.1 and is built by MiniMax.",
  stop_words = { "[e~[" },
}
