package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/whiskercam/whisker/agent/web"
)

func passwdCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "passwd",
		Short: "Make a password hash for a user of the web page (web.users)",
		Long: `Reads a password (asked twice on a terminal, else the first line of the
standard input) and prints an argon2id hash of it, as an entry for
web.users in the agent's configuration. The page asks for a login
whenever web.users is not empty, and refuses to listen beyond loopback
without users.`,
		Example: `  whisker passwd --user ann
  printf '%s\n' "$PASSWORD" | whisker passwd --user ann`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var pw string
			if fd := int(os.Stdin.Fd()); term.IsTerminal(fd) {
				fmt.Fprint(cmd.ErrOrStderr(), "Password: ")
				a, err := term.ReadPassword(fd)
				fmt.Fprintln(cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				fmt.Fprint(cmd.ErrOrStderr(), "Again: ")
				b, err := term.ReadPassword(fd)
				fmt.Fprintln(cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				if string(a) != string(b) {
					return errors.New("the two passwords differ")
				}
				pw = string(a)
			} else {
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && line == "" {
					return fmt.Errorf("read the password from the standard input: %w", err)
				}
				pw = strings.TrimRight(line, "\r\n")
			}
			if len(pw) < 8 {
				return errors.New("use a password of at least 8 characters")
			}
			h, err := web.HashPassword(pw)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "web:\n  users:\n    - name: %s\n      password_hash: '%s'\n", name, h)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "user", "whisker", "the user name")
	return cmd
}
