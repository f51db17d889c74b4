package telemetry

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// ParseLevel reads a configured log level: debug, info (also ""), warn or
// error, in any case.
func ParseLevel(level string) (slog.Level, error) {
	var lv slog.Level
	if level != "" {
		if err := lv.UnmarshalText([]byte(strings.ToLower(level))); err != nil {
			return 0, fmt.Errorf("log level %q: %w", level, err)
		}
	}
	return lv, nil
}

// NewLogger builds the process logger. format is "json" (default) or
// "text". It logs at the level held by level, so a reload can change the
// level of every logger already handed out.
func NewLogger(w io.Writer, format string, level *slog.LevelVar) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "", "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("log format %q: use json or text", format)
	}
}
