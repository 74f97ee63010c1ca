package driver

import (
	"errors"
)

// ComposeOptions configure the compose driver.
type ComposeOptions struct {
	File, Project, Dir string
}

// NewCompose returns the compose driver.
func NewCompose(opts ComposeOptions) (Driver, error) {
	return nil, errors.New("driver: compose not implemented yet")
}
