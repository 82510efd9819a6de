package bootstrap

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	def := DefaultConfig() // 1s initial, 1m cap, ×2, jitter 0.2
	noJitter := def
	noJitter.Jitter = 0
	flat := def
	flat.Multiplier, flat.Jitter = 1, 0
	huge := noJitter
	huge.MaxBackoff = math.MaxInt64
	tests := []struct {
		name    string
		cfg     Config
		attempt int
		rnd     float64
		want    time.Duration
	}{
		{"first failure, no jitter drawn", def, 1, 0, time.Second},
		{"second failure doubles", def, 2, 0, 2 * time.Second},
		{"third failure", def, 3, 0, 4 * time.Second},
		{"sixth failure below cap", def, 6, 0, 32 * time.Second},
		{"seventh failure capped", def, 7, 0, time.Minute},
		{"far past cap, no overflow", def, 10_000, 0, time.Minute},
		{"jitter shortens by rnd·Jitter", def, 1, 0.5, 900 * time.Millisecond},
		{"jitter at cap still spreads", def, 50, 0.5, 54 * time.Second},
		{"rnd 1 is the shortest wait", def, 2, 1, 1600 * time.Millisecond},
		{"rnd above 1 clamped", def, 2, 7, 1600 * time.Millisecond},
		{"negative rnd clamped", def, 2, -3, 2 * time.Second},
		{"NaN rnd ignored", def, 2, math.NaN(), 2 * time.Second},
		{"attempt 0 counts as 1", def, 0, 0, time.Second},
		{"negative attempt counts as 1", def, -4, 0, time.Second},
		{"no jitter", noJitter, 4, 0.9, 8 * time.Second},
		{"multiplier 1 is flat", flat, 30, 0.5, time.Second},
		{"cap at MaxInt64 does not wrap", huge, 5000, 0, math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Backoff(tt.cfg, tt.attempt, tt.rnd); got != tt.want {
				t.Errorf("Backoff(attempt=%d, rnd=%v) = %v, want %v", tt.attempt, tt.rnd, got, tt.want)
			}
		})
	}
}

// TestBackoffBounds checks the documented envelope over a grid of inputs.
func TestBackoffBounds(t *testing.T) {
	cfg := DefaultConfig()
	prev := time.Duration(0)
	for attempt := 1; attempt <= 64; attempt++ {
		hi := Backoff(cfg, attempt, 0)
		lo := Backoff(cfg, attempt, 1)
		if hi > cfg.MaxBackoff || lo < time.Duration(float64(hi)*(1-cfg.Jitter))-1 || lo > hi {
			t.Fatalf("attempt %d: range [%v, %v] outside the envelope", attempt, lo, hi)
		}
		if hi < prev {
			t.Fatalf("attempt %d: max wait %v shrank from %v", attempt, hi, prev)
		}
		prev = hi
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name      string
		mutate    func(*Config)
		wantErrIn []string // empty: valid
	}{
		{"defaults", func(*Config) {}, nil},
		{"nil logger allowed", func(c *Config) { c.Logger = nil }, nil},
		{"forever is 0", func(c *Config) { c.MaxAttempts = 0 }, nil},
		{"equal backoffs", func(c *Config) { c.MaxBackoff = c.InitialBackoff }, nil},
		{"zero initial", func(c *Config) { c.InitialBackoff = 0 }, []string{"InitialBackoff must be positive"}},
		{"max below initial", func(c *Config) { c.MaxBackoff = time.Millisecond }, []string{"MaxBackoff (1ms) must be at least InitialBackoff (1s)"}},
		{"multiplier below 1", func(c *Config) { c.Multiplier = 0.5 }, []string{"Multiplier"}},
		{"multiplier NaN", func(c *Config) { c.Multiplier = math.NaN() }, []string{"Multiplier"}},
		{"multiplier Inf", func(c *Config) { c.Multiplier = math.Inf(1) }, []string{"Multiplier"}},
		{"jitter 1", func(c *Config) { c.Jitter = 1 }, []string{"Jitter must be in [0, 1)"}},
		{"jitter negative", func(c *Config) { c.Jitter = -0.1 }, []string{"Jitter"}},
		{"negative attempts", func(c *Config) { c.MaxAttempts = -1 }, []string{"MaxAttempts"}},
		{"zero dial timeout", func(c *Config) { c.DialTimeout = 0 }, []string{"DialTimeout"}},
		{"several at once", func(c *Config) { c.Jitter, c.DialTimeout = 2, -1 }, []string{"Jitter", "DialTimeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.mutate(&cfg)
			err := cfg.Validate()
			if len(tt.wantErrIn) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want errors mentioning %q", tt.wantErrIn)
			}
			for _, want := range tt.wantErrIn {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate = %v, want it to mention %q", err, want)
				}
			}
		})
	}
}
