package gormcrypt_test

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/fieldcrypt/fieldcrypt/internal/testsvc"
)

// TestWritePaths runs every GORM write path and checks that the database
// holds only ciphertexts, the caller's struct only plaintexts, and that the
// row reads back as written.
func TestWritePaths(t *testing.T) {
	cases := []struct {
		name string
		// run writes and returns the rows it expects in the table.
		run func(t *testing.T, db *gorm.DB) []Patient
	}{
		{"Create", func(t *testing.T, db *gorm.DB) []Patient {
			p := samplePatient("c1")
			want := p
			require.NoError(t, db.Create(&p).Error)
			requireSamePatient(t, want, p) // caller keeps the plaintext
			return []Patient{p}
		}},
		{"Create/auto-generated key in BeforeCreate", func(t *testing.T, db *gorm.DB) []Patient {
			p := samplePatient("c2")
			p.ID = uuid.Nil
			require.NoError(t, db.Create(&p).Error)
			require.NotEqual(t, uuid.Nil, p.ID)
			return []Patient{p}
		}},
		{"Create/slice", func(t *testing.T, db *gorm.DB) []Patient {
			ps := []Patient{samplePatient("s1"), samplePatient("s2")}
			ps[1].Notes = nil
			ps[1].Tags = nil
			ps[1].Photo = nil
			require.NoError(t, db.Create(&ps).Error)
			assert.Equal(t, "Ada s1", ps[0].Name)
			return ps
		}},
		{"CreateInBatches", func(t *testing.T, db *gorm.DB) []Patient {
			ps := []Patient{samplePatient("b1"), samplePatient("b2"), samplePatient("b3")}
			require.NoError(t, db.CreateInBatches(&ps, 2).Error)
			return ps
		}},
		{"Create/map", func(t *testing.T, db *gorm.DB) []Patient {
			id := uuid.New()
			require.NoError(t, db.Model(&Patient{}).Create(map[string]any{
				"id": id.String(), "name": "Map Name", "ssn": "111-11-1111", "email": "map@example.com", "notes": nil, "visits": 3,
			}).Error)
			return []Patient{{ID: id, Name: "Map Name", SSN: "111-11-1111", Email: "map@example.com", Visits: 3}}
		}},
		{"Create/slice of maps", func(t *testing.T, db *gorm.DB) []Patient {
			a, b := uuid.New(), uuid.New()
			require.NoError(t, db.Model(&Patient{}).Create([]map[string]any{
				{"id": a.String(), "name": "A", "ssn": "1", "email": "a@x"},
				{"id": b.String(), "name": "B", "ssn": "2", "email": "b@x"},
			}).Error)
			return []Patient{{ID: a, Name: "A", SSN: "1", Email: "a@x"}, {ID: b, Name: "B", SSN: "2", Email: "b@x"}}
		}},
		{"Save/new", func(t *testing.T, db *gorm.DB) []Patient {
			p := samplePatient("sn")
			p.ID = uuid.Nil
			require.NoError(t, db.Save(&p).Error)
			return []Patient{p}
		}},
		{"Save/new with preset key (upsert fallback)", func(t *testing.T, db *gorm.DB) []Patient {
			p := samplePatient("sk")
			require.NoError(t, db.Save(&p).Error)
			return []Patient{p}
		}},
		{"Save/existing", func(t *testing.T, db *gorm.DB) []Patient {
			p := samplePatient("se")
			require.NoError(t, db.Create(&p).Error)
			p.Name, p.SSN, p.Email, p.Notes, p.Visits = "Saved", "999-99-9999", "saved@example.com", nil, 42
			want := p
			require.NoError(t, db.Save(&p).Error)
			requireSamePatient(t, want, p)
			return []Patient{p}
		}},
		{"Updates/struct", func(t *testing.T, db *gorm.DB) []Patient {
			p := samplePatient("us")
			require.NoError(t, db.Create(&p).Error)
			require.NoError(t, db.Model(&p).Updates(Patient{Name: "Updated", SSN: "222-22-2222", Visits: 9}).Error)
			assert.Equal(t, "Updated", p.Name) // GORM copies the plaintext into the model
			p.Name, p.SSN, p.Visits = "Updated", "222-22-2222", 9
			return []Patient{p}
		}},
		{"Updates/map", func(t *testing.T, db *gorm.DB) []Patient {
			p := samplePatient("um")
			require.NoError(t, db.Create(&p).Error)
			require.NoError(t, db.Model(&p).Updates(map[string]any{"name": "Mapped", "ssn": "333", "notes": nil, "tags": []string{"x"}}).Error)
			assert.Equal(t, "Mapped", p.Name)
			p.Name, p.SSN, p.Notes, p.Tags = "Mapped", "333", nil, []string{"x"}
			return []Patient{p}
		}},
		{"Update", func(t *testing.T, db *gorm.DB) []Patient {
			p := samplePatient("u1")
			require.NoError(t, db.Create(&p).Error)
			require.NoError(t, db.Model(&p).Update("email", "new@example.com").Error)
			require.NoError(t, db.Model(&Patient{}).Where("id = ?", p.ID).Update("notes", "bulk note").Error)
			p.Email, p.Notes = "new@example.com", ptr("bulk note")
			return []Patient{p}
		}},
		{"UpdateColumn(s)", func(t *testing.T, db *gorm.DB) []Patient {
			p := samplePatient("uc")
			require.NoError(t, db.Create(&p).Error)
			require.NoError(t, db.Model(&p).UpdateColumn("ssn", "444").Error)
			require.NoError(t, db.Model(&p).UpdateColumns(map[string]any{"name": "Cols", "visits": 5}).Error)
			require.NoError(t, db.Model(&p).UpdateColumns(Patient{Email: "cols@example.com"}).Error)
			p.SSN, p.Name, p.Visits, p.Email = "444", "Cols", 5, "cols@example.com"
			return []Patient{p}
		}},
		{"FirstOrCreate/Attrs", func(t *testing.T, db *gorm.DB) []Patient {
			var p Patient
			require.NoError(t, db.Where(&Patient{SSN: "555"}).Attrs(Patient{Name: "Attr", Email: "attr@x"}).FirstOrCreate(&p).Error)
			assert.Equal(t, "555", p.SSN)
			var again Patient
			require.NoError(t, db.Where(&Patient{SSN: "555"}).Attrs(Patient{Name: "Other"}).FirstOrCreate(&again).Error)
			assert.Equal(t, p.ID, again.ID)
			assert.Equal(t, "Attr", again.Name)
			return []Patient{{ID: p.ID, SSN: "555", Name: "Attr", Email: "attr@x"}}
		}},
		{"FirstOrCreate/Assign", func(t *testing.T, db *gorm.DB) []Patient {
			p := samplePatient("as")
			require.NoError(t, db.Create(&p).Error)
			var q Patient
			require.NoError(t, db.Where(&Patient{Email: p.Email}).Assign(Patient{Name: "Assigned"}).FirstOrCreate(&q).Error)
			assert.Equal(t, p.ID, q.ID)
			var r Patient
			require.NoError(t, db.Where(&Patient{Email: p.Email}).Assign(map[string]any{"ssn": "666"}).FirstOrCreate(&r).Error)
			p.Name, p.SSN = "Assigned", "666"
			return []Patient{p}
		}},
		{"OnConflict/UpdateAll", func(t *testing.T, db *gorm.DB) []Patient {
			p := samplePatient("oa")
			require.NoError(t, db.Create(&p).Error)
			p2 := p
			p2.Name, p2.SSN = "Upserted", "777"
			require.NoError(t, db.Clauses(clause.OnConflict{UpdateAll: true}).Create(&p2).Error)
			return []Patient{p2}
		}},
		{"OnConflict/AssignmentColumns", func(t *testing.T, db *gorm.DB) []Patient {
			p := samplePatient("oc")
			require.NoError(t, db.Create(&p).Error)
			p2 := p
			p2.Name, p2.SSN, p2.Email = "Cols Upsert", "888", "ignored@x"
			require.NoError(t, db.Clauses(clause.OnConflict{
				Columns:   []clause.Column{{Name: "id"}},
				DoUpdates: clause.AssignmentColumns([]string{"name", "ssn"}),
			}).Create(&p2).Error)
			p.Name, p.SSN = "Cols Upsert", "888"
			return []Patient{p}
		}},
		{"OnConflict/explicit values", func(t *testing.T, db *gorm.DB) []Patient {
			p := samplePatient("ov")
			require.NoError(t, db.Create(&p).Error)
			require.NoError(t, db.Clauses(clause.OnConflict{
				Columns:   []clause.Column{{Name: "id"}},
				DoUpdates: clause.Assignments(map[string]any{"name": "Literal", "ssn": "999"}),
			}).Create(&p).Error)
			p.Name, p.SSN = "Literal", "999"
			return []Patient{p}
		}},
	}
	testsvc.Each(t, func(t *testing.T, raw *gorm.DB) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				db, _ := open(t, raw)
				require.NoError(t, db.Exec("DELETE FROM patients").Error)
				want := tc.run(t, db)
				requireAllEncrypted(t, db)
				for _, w := range want {
					var got Patient
					require.NoError(t, db.First(&got, "id = ?", w.ID).Error)
					requireSamePatient(t, w, got)
					var bySSN Patient
					require.NoError(t, db.Where(&Patient{SSN: w.SSN}).First(&bySSN).Error, "blind index must follow the value")
					assert.Equal(t, w.ID, bySSN.ID)
					var byEmail Patient
					require.NoError(t, db.Where(&Patient{Email: w.Email}).First(&byEmail).Error)
					assert.Equal(t, w.ID, byEmail.ID)
				}
			})
		}
	})
}

// TestWriteFailsClosed checks the writes that cannot be encrypted.
func TestWriteFailsClosed(t *testing.T) {
	testsvc.Each(t, func(t *testing.T, raw *gorm.DB) {
		db, _ := open(t, raw)
		p := samplePatient("fc")
		require.NoError(t, db.Create(&p).Error)
		cases := []struct {
			name string
			run  func() error
		}{
			{"Update with an SQL expression", func() error {
				return db.Model(&p).Update("name", gorm.Expr("UPPER(name)")).Error
			}},
			{"Exec with a plaintext", func() error {
				return db.Exec("UPDATE patients SET name = ? WHERE id = ?", "Plain Text", p.ID.String()).Error
			}},
			{"Exec insert with a plaintext", func() error {
				return db.Exec("INSERT INTO patients (id, name) VALUES (?, ?)", uuid.NewString(), "Plain").Error
			}},
			{"wrong Go type in a map", func() error {
				return db.Model(&p).Updates(map[string]any{"visits": "many"}).Error
			}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				require.Error(t, tc.run())
				requireAllEncrypted(t, db)
			})
		}
	})
}
