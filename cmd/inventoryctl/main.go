// Command inventoryctl holds the offline tools of the inventory ledger: it
// reads a data directory and checks, exports or questions its ledger.
//
//	inventoryctl verify  [--data-dir DIR] [--retention 24h]
//	inventoryctl export  [--data-dir DIR] [--format jsonl|csv] [--product ID] [--from TIME] [--to TIME]
//	inventoryctl stock   [--data-dir DIR] [--as-of TIME] [--product ID] [--format jsonl|csv]
//	inventoryctl inspect [--data-dir DIR]
//	inventoryctl snapshot [--data-dir DIR]   write every shard's snapshot now
//
// Every command also takes --archive-dir (INVENTORY_ARCHIVE_DIR): the
// directory inventoryd's --archive-dir moved old log segments to, read
// before the data directory's; without it, the one the manifest records.
// A log missing its first segments is refused, naming them.
//
// Every command but snapshot only reads: none takes the directory's lock,
// writes, repairs or creates anything, so each may run beside an
// inventoryd that holds the directory. It then reads each shard's log up to its last whole
// block (a block being written is left for later, as a torn tail is) and
// says so. A command that writes must refuse a directory in use
// (shard.LockDir).
//
// The tools reuse the service's own code: wal.Reader checks every block
// and record checksum, and shard.ReplayLedger replays each shard through
// the same apply that start-up uses, which checks every invariant.
//
// Exit status: 0 done (verify: no problem found), 1 a problem in the data
// or the directory, 2 a usage error.
package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// commands maps each subcommand to its entry point, one file each.
var commands = map[string]func(args []string, stdout, stderr io.Writer) int{
	"verify":   verify,
	"export":   export,
	"stock":    stock,
	"inspect":  inspect,
	"snapshot": runSnapshot,
}

// Exit statuses.
const (
	exitOK      = 0
	exitProblem = 1
	exitUsage   = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "inventoryctl: unknown command %q\n", args[0])
		usage(stderr)
		return exitUsage
	}
	return cmd(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	slices.Sort(names)
	fmt.Fprintf(w, "Usage: inventoryctl <command> [flags]\n\nCommands: %s\n"+
		"Run inventoryctl <command> -h for its flags. Every command reads --data-dir\n"+
		"(default ./data, or INVENTORY_DATA_DIR) and --archive-dir (INVENTORY_ARCHIVE_DIR;\n"+
		"default: the archive directory the manifest records, if any).\n", strings.Join(names, ", "))
}
