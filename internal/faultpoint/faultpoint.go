// Package faultpoint lets tests stop a real process at a named point, the
// way a crash, a preempted node or kill -9 would: with no chance to clean
// up. The environment variable POCKETLLM_FAULT=NAME:N makes the Nth call of
// Hit(NAME) (N from 1; ":N" may be left out for the first) send the process
// SIGKILL. Without the variable Hit costs one comparison.
package faultpoint

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Env names the fault point to stop at.
const Env = "POCKETLLM_FAULT"

var (
	once  sync.Once
	name  string
	at    int
	mu    sync.Mutex
	count int
)

func parse() {
	v := os.Getenv(Env)
	if v == "" {
		return
	}
	n, after, ok := strings.Cut(v, ":")
	at = 1
	if ok {
		k, err := strconv.Atoi(after)
		if err != nil || k < 1 {
			return // a malformed request stops nothing rather than somewhere unexpected
		}
		at = k
	}
	name = n
}

// Hit is a point a process may be killed at.
func Hit(point string) {
	once.Do(parse)
	if name == "" || point != name {
		return
	}
	mu.Lock()
	count++
	c := count
	mu.Unlock()
	if c == at {
		if p, err := os.FindProcess(os.Getpid()); err == nil {
			p.Kill() // SIGKILL where there are signals
		}
		for { // nothing after this point may run while the kill lands
			time.Sleep(time.Second)
		}
	}
}
