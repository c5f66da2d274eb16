// Package ctxio ends a stream when a context ends: a read from a local file (an oci: layout, a
// store's own layer) has no request that cancelling the context would end.
package ctxio

import (
	"context"
	"io"
)

// Reader returns r, ended with ctx's cause (context.Cause) at the first read after ctx ends.
func Reader(ctx context.Context, r io.Reader) io.Reader { return reader{ctx, r} }

type reader struct {
	ctx context.Context
	r   io.Reader
}

func (r reader) Read(p []byte) (int, error) {
	if r.ctx.Err() != nil {
		return 0, context.Cause(r.ctx)
	}
	return r.r.Read(p)
}
