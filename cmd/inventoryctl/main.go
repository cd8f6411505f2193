// Command inventoryctl holds the offline tools of an inventory data
// directory: each subcommand works on a directory no running inventoryd
// holds (the lock file says), and says in its help whether it writes.
//
//	inventoryctl snapshot --data-dir DIR   write every shard's snapshot now
package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// commands maps each subcommand to its entry point, which gets the
// arguments after the subcommand's name and returns the exit status.
var commands = map[string]func(args []string, stdout, stderr io.Writer) int{
	"snapshot": runSnapshot,
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		return 2
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "inventoryctl: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	return cmd(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	slices.Sort(names)
	fmt.Fprintf(w, "Usage: inventoryctl COMMAND [flags]\n\nCommands: %s\nRun inventoryctl COMMAND -h for its flags.\n", strings.Join(names, ", "))
}
