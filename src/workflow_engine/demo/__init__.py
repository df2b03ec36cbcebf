"""Demo HelpScout, Notion and Slack MCP servers over a seeded, clearly labelled dataset.

They let a newcomer run the `customer_support` and `knowledge_base` templates with no
accounts anywhere. Mounted at `/demo/mcp/<name>/` when `DEMO_SERVICES` is on, and served
standalone by `workflow-engine demo-services` on the seed's ports.
"""
