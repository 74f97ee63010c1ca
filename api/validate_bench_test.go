package api

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	"github.com/cairndb/cairn/api/cairnpb"
)

// BenchmarkValidateAppend measures the append hot path's validation and conversion of a request
// with 1 and 64 events of 256 bytes, ids set by the client (as the Go client does).
//
//	go test -run '^$' -bench ValidateAppend -benchmem ./api/
func BenchmarkValidateAppend(b *testing.B) {
	svc := NewService(newFakeNode(b, "n1"), Config{}, discardLogger())
	for _, n := range []int{1, 64} {
		req := &cairnpb.AppendRequest{Stream: "orders-1", Expected: anyRev()}
		for i := range n {
			req.Events = append(req.Events, &cairnpb.EventData{Id: uuidN(i + 1), Type: "Bench", Data: make([]byte, 256)})
		}
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if _, err := svc.validateAppend(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A repeated id's violation names the field of its first use, within a part and across parts
// (the field names are built only when reported).
func TestDuplicateIDNamesFirstUse(t *testing.T) {
	svc := NewService(newFakeNode(t, "n1"), Config{}, discardLogger())
	defer svc.Close() //nolint:errcheck // test service
	_, err := svc.validateAppend(&cairnpb.AppendRequest{Stream: "s", Expected: anyRev(),
		Events: []*cairnpb.EventData{evt(1, "A"), evt(2, "A"), evt(1, "A")}})
	wantDescription(t, err, "events[2].id", "is also used by events[0].id")
	_, err = svc.validateAppendMulti(&cairnpb.AppendMultiRequest{Appends: []*cairnpb.StreamAppend{
		{Stream: "s", Expected: anyRev(), Events: []*cairnpb.EventData{evt(7, "A"), evt(1, "A")}},
		{Stream: "t", Expected: anyRev(), Events: []*cairnpb.EventData{evt(1, "A")}}}})
	wantDescription(t, err, "appends[1].events[0].id", "is also used by appends[0].events[1].id")
}

func wantDescription(t *testing.T, err error, field, substr string) {
	t.Helper()
	br := detailOf[*errdetails.BadRequest](t, status.Convert(err))
	for _, v := range br.GetFieldViolations() {
		if v.GetField() == field {
			if !strings.Contains(v.GetDescription(), substr) {
				t.Fatalf("%s: description %q lacks %q", field, v.GetDescription(), substr)
			}
			return
		}
	}
	t.Fatalf("no violation of %s: %v", field, br.GetFieldViolations())
}
