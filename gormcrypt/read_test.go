package gormcrypt_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/fieldcrypt/fieldcrypt/envelope"
	"github.com/fieldcrypt/fieldcrypt/envelope/envelopetest"
	"github.com/fieldcrypt/fieldcrypt/gormcrypt"
	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

// seed creates two doctors and three patients with records.
func seed(t *testing.T, db *gorm.DB) ([]Doctor, []Patient) {
	t.Helper()
	docs := []Doctor{{Name: "Dr Who", License: "L-1"}, {Name: "Dr No", License: "L-2"}}
	require.NoError(t, db.Create(&docs).Error)
	ps := []Patient{samplePatient("r1"), samplePatient("r2"), samplePatient("r3")}
	ps[0].DoctorID, ps[1].DoctorID = &docs[0].ID, &docs[1].ID
	ps[0].Records = []Record{{Text: "flu"}, {Text: "cold"}}
	require.NoError(t, db.Create(&ps).Error)
	return docs, ps
}

// patientNameView is a read model over patients: tagged like the model and
// named after its table, so its values decrypt.
type patientNameView struct {
	ID   uuid.UUID
	Name string `fieldcrypt:"high"`
}

func (patientNameView) TableName() string { return "patients" }

func TestReadPaths(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, raw *gorm.DB) {
		db, _ := open(t, raw)
		docs, ps := seed(t, db)
		byID := func(id uuid.UUID) Patient {
			for _, p := range ps {
				if p.ID == id {
					p.Doctor, p.Records = nil, nil
					return p
				}
			}
			t.Fatalf("unknown patient %s", id)
			return Patient{}
		}
		check := func(t *testing.T, got Patient) {
			t.Helper()
			requireSamePatient(t, byID(got.ID), got)
		}
		cases := []struct {
			name string
			run  func(t *testing.T)
		}{
			{"First", func(t *testing.T) {
				var p Patient
				require.NoError(t, db.Where("id = ?", ps[1].ID).First(&p).Error)
				check(t, p)
			}},
			{"First by primary key in struct", func(t *testing.T) {
				p := Patient{ID: ps[2].ID}
				require.NoError(t, db.First(&p).Error)
				check(t, p)
			}},
			{"Take", func(t *testing.T) {
				var p Patient
				require.NoError(t, db.Take(&p).Error)
				check(t, p)
			}},
			{"Last", func(t *testing.T) {
				var p Patient
				require.NoError(t, db.Last(&p).Error)
				check(t, p)
			}},
			{"Find", func(t *testing.T) {
				var got []Patient
				require.NoError(t, db.Find(&got).Error)
				require.Len(t, got, 3)
				for _, p := range got {
					check(t, p)
				}
			}},
			{"Find pointers", func(t *testing.T) {
				var got []*Patient
				require.NoError(t, db.Find(&got).Error)
				require.Len(t, got, 3)
				for _, p := range got {
					check(t, *p)
				}
			}},
			{"Select with primary key last", func(t *testing.T) {
				var got []Patient
				require.NoError(t, db.Select("name", "ssn", "id").Find(&got).Error)
				require.Len(t, got, 3)
				for _, p := range got {
					assert.Equal(t, byID(p.ID).Name, p.Name)
				}
			}},
			{"Scan into struct", func(t *testing.T) {
				var p Patient
				require.NoError(t, db.Model(&Patient{}).Where("id = ?", ps[0].ID).Scan(&p).Error)
				check(t, p)
			}},
			{"Raw Scan into struct", func(t *testing.T) {
				var p Patient
				require.NoError(t, db.Raw(rebind(db, "SELECT * FROM patients WHERE id = ?"), ps[0].ID.String()).Scan(&p).Error)
				check(t, p)
			}},
			{"Rows and ScanRows", func(t *testing.T) {
				rows, err := db.Model(&Patient{}).Rows()
				require.NoError(t, err)
				defer rows.Close()
				n := 0
				for rows.Next() {
					var p Patient
					require.NoError(t, db.ScanRows(rows, &p))
					check(t, p)
					n++
				}
				assert.Equal(t, 3, n)
			}},
			{"FindInBatches", func(t *testing.T) {
				var all []Patient
				var batch []Patient
				require.NoError(t, db.FindInBatches(&batch, 2, func(tx *gorm.DB, _ int) error {
					all = append(all, batch...)
					return nil
				}).Error)
				require.Len(t, all, 3)
				for _, p := range all {
					check(t, p)
				}
			}},
			{"Preload", func(t *testing.T) {
				var p Patient
				require.NoError(t, db.Preload("Records").Preload("Doctor").First(&p, "id = ?", ps[0].ID).Error)
				require.Len(t, p.Records, 2)
				assert.ElementsMatch(t, []string{"flu", "cold"}, []string{p.Records[0].Text, p.Records[1].Text})
				require.NotNil(t, p.Doctor)
				assert.Equal(t, docs[0].Name, p.Doctor.Name)
				assert.Equal(t, docs[0].License, p.Doctor.License)
			}},
			{"Joins", func(t *testing.T) {
				var got []Patient
				require.NoError(t, db.Joins("Doctor").Where("patients.doctor_id IS NOT NULL").Find(&got).Error)
				require.Len(t, got, 2)
				for _, p := range got {
					require.NotNil(t, p.Doctor)
					assert.Contains(t, []string{"Dr Who", "Dr No"}, p.Doctor.Name)
					assert.Contains(t, []string{"L-1", "L-2"}, p.Doctor.License)
					p.Doctor = nil
					check(t, p)
				}
			}},
			{"Find into map with model", func(t *testing.T) {
				var m map[string]any
				require.NoError(t, db.Model(&Patient{}).Where("id = ?", ps[0].ID).Take(&m).Error)
				assert.Equal(t, ps[0].Name, m["name"])
				assert.Equal(t, ps[0].SSN, m["ssn"])
				assert.Equal(t, ps[0].Visits, m["visits"])
				var ms []map[string]any
				require.NoError(t, db.Model(&Patient{}).Find(&ms).Error)
				require.Len(t, ms, 3)
				for _, m := range ms {
					assert.False(t, strings.HasPrefix(m["name"].(string), "fc1:"))
				}
			}},
			{"Find into map by table name decrypts", func(t *testing.T) {
				var ms []map[string]any
				require.NoError(t, db.Table("patients").Find(&ms).Error)
				require.Len(t, ms, 3)
				for _, m := range ms {
					p := byID(uuid.MustParse(fmt.Sprint(m["id"])))
					assert.Equal(t, p.Name, m["name"])
					assert.Equal(t, p.SSN, m["ssn"])
				}
			}},
			{"Find into map from a table gormcrypt does not know fails closed", func(t *testing.T) {
				other := fresh(t, raw, nil) // a plugin that never saw Patient
				require.NoError(t, other.Use(gormcrypt.New(envelopetest.New())))
				require.NoError(t, gormcrypt.Register(other, &Doctor{}))
				var ms []map[string]any
				err := other.Table("patients").Find(&ms).Error
				require.ErrorIs(t, err, gormcrypt.ErrUnsupportedPath)
				assert.Empty(t, ms)
			}},
			{"Pluck fails closed", func(t *testing.T) {
				var names []string
				err := db.Model(&Patient{}).Pluck("name", &names).Error
				require.ErrorIs(t, err, gormcrypt.ErrUnsupportedPath)
				assert.Empty(t, names)
				var ages []int // plain column: fine
				require.NoError(t, db.Model(&Patient{}).Pluck("age", &ages).Error)
				assert.Len(t, ages, 3)
			}},
			{"Select without primary key fails closed for row-bound values", func(t *testing.T) {
				var got []Patient
				err := db.Select("name").Find(&got).Error
				require.ErrorIs(t, err, gormcrypt.ErrUnsupportedPath)
				assert.Empty(t, got)
			}},
			{"Select without primary key fails closed for auto-increment rows too", func(t *testing.T) {
				// Auto-increment keys are row-bound by default (sealed again once
				// the INSERT returns the key).
				var got []Doctor
				err := db.Select("name").Find(&got).Error
				require.ErrorIs(t, err, gormcrypt.ErrUnsupportedPath)
				assert.Empty(t, got)
				require.NoError(t, db.Select("id", "name").Find(&got).Error)
				require.Len(t, got, 2)
				assert.ElementsMatch(t, []string{"Dr Who", "Dr No"}, []string{got[0].Name, got[1].Name})
			}},
			{"Find into a struct without tags decrypts", func(t *testing.T) {
				type patientView struct {
					ID   uuid.UUID
					Name string
				}
				var got []patientView
				require.NoError(t, db.Model(&Patient{}).Find(&got).Error)
				require.Len(t, got, 3)
				for _, v := range got {
					assert.Equal(t, byID(v.ID).Name, v.Name)
				}
			}},
			{"Find into a tagged view with the model's table", func(t *testing.T) {
				var got []patientNameView
				require.NoError(t, db.Model(&Patient{}).Find(&got).Error)
				require.Len(t, got, 3)
				for _, v := range got {
					assert.Equal(t, byID(v.ID).Name, v.Name)
				}
			}},
			{"Count", func(t *testing.T) {
				var n int64
				require.NoError(t, db.Model(&Patient{}).Where(&Patient{Email: ps[0].Email}).Count(&n).Error)
				assert.EqualValues(t, 1, n)
			}},
		}
		for _, tc := range cases {
			t.Run(tc.name, tc.run)
		}
	})
}

func TestQueries(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, raw *gorm.DB) {
		db, keys := open(t, raw)
		_, ps := seed(t, db)
		ids := func(got []Patient) []uuid.UUID {
			out := make([]uuid.UUID, len(got))
			for i, p := range got {
				out[i] = p.ID
			}
			return out
		}
		cases := []struct {
			name  string
			query func(tx *gorm.DB) *gorm.DB
			want  []uuid.UUID
			err   error
		}{
			{"struct/blind index", func(tx *gorm.DB) *gorm.DB { return tx.Where(&Patient{SSN: ps[0].SSN}) }, []uuid.UUID{ps[0].ID}, nil},
			{"struct/deterministic", func(tx *gorm.DB) *gorm.DB { return tx.Where(&Patient{Email: ps[1].Email}) }, []uuid.UUID{ps[1].ID}, nil},
			{"struct/both and plain", func(tx *gorm.DB) *gorm.DB {
				return tx.Where(&Patient{SSN: ps[2].SSN, Email: ps[2].Email, Age: 36})
			}, []uuid.UUID{ps[2].ID}, nil},
			{"struct/no match", func(tx *gorm.DB) *gorm.DB { return tx.Where(&Patient{SSN: "nope"}) }, nil, nil},
			{"inline struct", func(tx *gorm.DB) *gorm.DB { return tx.Where(Patient{Email: ps[0].Email}) }, []uuid.UUID{ps[0].ID}, nil},
			{"map", func(tx *gorm.DB) *gorm.DB { return tx.Where(map[string]any{"ssn": ps[1].SSN}) }, []uuid.UUID{ps[1].ID}, nil},
			{"map/IN", func(tx *gorm.DB) *gorm.DB {
				return tx.Where(map[string]any{"email": []string{ps[0].Email, ps[2].Email}})
			}, []uuid.UUID{ps[0].ID, ps[2].ID}, nil},
			{"Eq", func(tx *gorm.DB) *gorm.DB { return tx.Where(gormcrypt.Eq("ssn", ps[2].SSN)) }, []uuid.UUID{ps[2].ID}, nil},
			{"Eq by field name", func(tx *gorm.DB) *gorm.DB { return tx.Where(gormcrypt.Eq("SSN", ps[2].SSN)) }, []uuid.UUID{ps[2].ID}, nil},
			{"In", func(tx *gorm.DB) *gorm.DB { return tx.Where(gormcrypt.In("ssn", ps[0].SSN, ps[1].SSN)) }, []uuid.UUID{ps[0].ID, ps[1].ID}, nil},
			{"In slice", func(tx *gorm.DB) *gorm.DB { return tx.Where(gormcrypt.In("email", []string{ps[1].Email})) }, []uuid.UUID{ps[1].ID}, nil},
			{"Or", func(tx *gorm.DB) *gorm.DB {
				return tx.Where(&Patient{SSN: ps[0].SSN}).Or(&Patient{Email: ps[1].Email})
			}, []uuid.UUID{ps[0].ID, ps[1].ID}, nil},
			{"Not", func(tx *gorm.DB) *gorm.DB { return tx.Not(&Patient{Email: ps[1].Email}) }, []uuid.UUID{ps[0].ID, ps[2].ID}, nil},
			{"Eq on a plain column", func(tx *gorm.DB) *gorm.DB { return tx.Where(gormcrypt.Eq("age", 36)) }, []uuid.UUID{ps[0].ID, ps[1].ID, ps[2].ID}, nil},
			{"randomized column", func(tx *gorm.DB) *gorm.DB { return tx.Where(&Patient{Name: ps[0].Name}) }, nil, gormcrypt.ErrNotSearchable},
			{"string condition", func(tx *gorm.DB) *gorm.DB { return tx.Where("ssn = ?", ps[0].SSN) }, nil, gormcrypt.ErrUnsupportedPath},
			{"string condition qualified", func(tx *gorm.DB) *gorm.DB { return tx.Where("patients.email IN ?", []string{"x"}) }, nil, gormcrypt.ErrUnsupportedPath},
			{"LIKE", func(tx *gorm.DB) *gorm.DB { return tx.Where("name LIKE ?", "Ada%") }, nil, gormcrypt.ErrUnsupportedPath},
			{"IS NULL is fine", func(tx *gorm.DB) *gorm.DB { return tx.Where("notes IS NOT NULL AND age > ?", 1) }, []uuid.UUID{ps[0].ID, ps[1].ID, ps[2].ID}, nil},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				var got []Patient
				err := tc.query(db.Model(&Patient{})).Find(&got).Error
				if tc.err != nil {
					require.ErrorIs(t, err, tc.err)
					return
				}
				require.NoError(t, err)
				assert.ElementsMatch(t, tc.want, ids(got))
			})
		}

		t.Run("unique blind index", func(t *testing.T) {
			dup := samplePatient("dup")
			dup.SSN = ps[0].SSN
			require.Error(t, db.Create(&dup).Error)
		})
		t.Run("Delete with struct condition", func(t *testing.T) {
			extra := samplePatient("del")
			require.NoError(t, db.Create(&extra).Error)
			res := db.Where(&Patient{SSN: extra.SSN}).Delete(&Patient{})
			require.NoError(t, res.Error)
			assert.EqualValues(t, 1, res.RowsAffected)
		})
		t.Run("Update with struct condition", func(t *testing.T) {
			res := db.Model(&Patient{}).Where(&Patient{Email: ps[2].Email}).Update("age", 40)
			require.NoError(t, res.Error)
			assert.EqualValues(t, 1, res.RowsAffected)
		})
		t.Run("search key rotation", func(t *testing.T) {
			keys.RotateSearch(envelope.Scope{Class: envelope.Critical})
			keys.RotateSearch(envelope.Scope{Class: envelope.High})
			late := samplePatient("late")
			require.NoError(t, db.Create(&late).Error)
			for _, p := range []Patient{ps[0], late} {
				var got Patient
				require.NoError(t, db.Where(&Patient{SSN: p.SSN}).First(&got).Error, "rows indexed under the old key are still found")
				assert.Equal(t, p.ID, got.ID)
				require.NoError(t, db.Where(&Patient{Email: p.Email}).First(&got).Error)
				assert.Equal(t, p.ID, got.ID)
			}
		})
	})
}

func TestBinding(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, raw *gorm.DB) {
		db, _ := open(t, raw)
		a, b := samplePatient("a"), samplePatient("b")
		require.NoError(t, db.Create(&a).Error)
		require.NoError(t, db.Create(&b).Error)
		doc1, doc2 := Doctor{Name: "One", License: "1"}, Doctor{Name: "Two", License: "2"}
		require.NoError(t, db.Create(&doc1).Error)
		require.NoError(t, db.Create(&doc2).Error)

		type copyCase struct {
			name           string
			table, from    string
			fromID         any
			to             string
			toID           any
			wantErr        bool
			model          any
			field, col, pk string
		}
		cases := []copyCase{
			{"same column, another row", "patients", "ssn", a.ID, "ssn", b.ID, true, &Patient{}, "Patient.SSN", "patients.ssn", b.ID.String()},
			{"another column, same row", "patients", "name", a.ID, "notes", a.ID, true, &Patient{}, "Patient.Notes", "patients.notes", a.ID.String()},
			{"deterministic, another column", "patients", "email", a.ID, "name", a.ID, true, &Patient{}, "Patient.Name", "patients.name", a.ID.String()},
			// Created with an auto-increment key: row-bound too (sealed again
			// once the INSERT returned the key).
			{"auto-increment, created, another row", "doctors", "name", doc1.ID, "name", doc2.ID, true, &Doctor{}, "Doctor.Name", "doctors.name", fmt.Sprint(doc2.ID)},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				v := rawColumn(t, db, tc.table, tc.from, tc.fromID)
				require.True(t, v.Valid)
				rawExec(t, db, "UPDATE "+tc.table+" SET "+tc.to+" = ? WHERE id = ?", v.String, fmt.Sprint(tc.toID))
				var err error
				switch tc.table {
				case "patients":
					var p Patient
					err = db.First(&p, "id = ?", tc.toID).Error
					if tc.wantErr {
						assert.Equal(t, Patient{}, p, "no half-filled result")
					}
				case "doctors":
					var d Doctor
					err = db.First(&d, tc.toID).Error
					if tc.wantErr {
						assert.Equal(t, Doctor{}, d, "no half-filled result")
					}
				}
				if !tc.wantErr {
					require.NoError(t, err)
					return
				}
				require.ErrorIs(t, err, gormcrypt.ErrDecrypt)
				require.ErrorIs(t, err, envelope.ErrAuthentication)
				var ge *gormcrypt.Error
				require.True(t, errors.As(err, &ge))
				msg := err.Error()
				assert.Contains(t, msg, tc.field)
				assert.Contains(t, msg, tc.col)
				assert.Contains(t, msg, tc.pk)
				for _, secret := range []string{a.Name, a.SSN, a.Email, b.SSN} {
					assert.NotContains(t, msg, secret)
				}
			})
		}

		t.Run("auto-increment, updated, is row-bound", func(t *testing.T) {
			require.NoError(t, db.Model(&doc1).Update("name", "One again").Error)
			v := rawColumn(t, db, "doctors", "name", doc1.ID)
			rawExec(t, db, "UPDATE doctors SET name = ? WHERE id = ?", v.String, doc2.ID)
			var d Doctor
			err := db.First(&d, doc2.ID).Error
			require.ErrorIs(t, err, envelope.ErrAuthentication)
			assert.Contains(t, err.Error(), fmt.Sprintf("primary key %d", doc2.ID))
		})

		t.Run("one bad row fails the whole Find", func(t *testing.T) {
			var all []Patient
			err := db.Find(&all).Error
			require.ErrorIs(t, err, gormcrypt.ErrDecrypt)
			assert.Empty(t, all)
		})

		t.Run("plaintext in a column that does not migrate", func(t *testing.T) {
			rawExec(t, db, "UPDATE doctors SET license = ? WHERE id = ?", "L-plain", doc1.ID)
			var d Doctor
			err := db.First(&d, doc1.ID).Error
			require.ErrorIs(t, err, gormcrypt.ErrNotCiphertext)
			require.ErrorIs(t, err, gormcrypt.ErrDecrypt)
			assert.NotContains(t, err.Error(), "L-plain")
			assert.Equal(t, Doctor{}, d)
		})
	})
}
