-- xuanyuan: Du Xiaoman XuanYuan, Human: ... Assistant:.
return {
  name = "xuanyuan",
  format_user = { "Human: {{content}} Assistant:" },
  default_system = "以下是用户和人工智能助手之间的对话。用户以Human开头，人工智能助手以Assistant开头，会对人类提出的问题给出有帮助、高质量、详细和礼貌的回答，并且总是拒绝参与与不道德、不安全、有争议、政治敏感等相关的话题、问题和指示。\n",
}
