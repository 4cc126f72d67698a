// Render an Ollama TEMPLATE with Go's own text/template, as Ollama does (tests/test_export.py).
// stdin: {"template": "...", "messages": [{"role": "...", "content": "..."}], "think": true|false|null};
// stdout: the prompt. As Ollama does, .Think is the request's think flag and .IsThinkSet whether
// the request set it.
package main

import (
	"encoding/json"
	"os"
	"text/template"
)

type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type Input struct {
	Template string    `json:"template"`
	Messages []Message `json:"messages"`
	Think    *bool     `json:"think"`
}

func main() {
	var in Input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		panic(err)
	}
	t := template.Must(template.New("").Parse(in.Template))
	system := ""
	if len(in.Messages) > 0 && in.Messages[0].Role == "system" {
		system = in.Messages[0].Content
	}
	data := map[string]any{
		"Messages":   in.Messages,
		"System":     system,
		"Think":      in.Think != nil && *in.Think,
		"IsThinkSet": in.Think != nil,
	}
	if err := t.Execute(os.Stdout, data); err != nil {
		panic(err)
	}
}
